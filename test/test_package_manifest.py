"""package.xml parses with catkin_pkg, agrees with setup.cfg, and declares every module the code imports."""

from __future__ import annotations

import ast
import configparser
import sys
from pathlib import Path

from catkin_pkg.package import parse_package

REPO = Path(__file__).resolve().parent.parent
SOURCES = [REPO / "microexp_ros", REPO / "launch", REPO / "scripts", REPO / "cmake"]

# Top-level import name → the package.xml key that provides it (ROS package or rosdep key).
PROVIDERS = {
    "rclpy": "rclpy", "std_msgs": "std_msgs", "sensor_msgs": "sensor_msgs", "builtin_interfaces":
    "builtin_interfaces", "diagnostic_msgs": "diagnostic_msgs", "event_camera_msgs": "event_camera_msgs",
    "rcl_interfaces": "rcl_interfaces", "hri_msgs": "hri_msgs", "cv_bridge": "cv_bridge", "launch": "launch",
    "launch_ros": "launch_ros", "ament_index_python": "ament_index_python",
    "numpy": "python3-numpy", "cv2": "python3-opencv", "yaml": "python3-yaml", "scipy": "python3-scipy",
    "skimage": "python3-skimage", "matplotlib": "python3-matplotlib", "tqdm": "python3-tqdm",
    "numba": "python3-numba", "rosbags": "python3-rosbags-pip", "torch": "python3-torch-pip",
    "snntorch": "python3-snntorch-pip", "safetensors": "python3-safetensors-pip", "aedat": "python3-aedat-pip",
    "mcap": "python3-mcap-pip", "dlib": "python3-dlib-pip", "psutil": "python3-psutil", "evt3": "python3-evt3-pip",
    "expelliarmus": "python3-expelliarmus-pip", "catkin_pkg": "python3-catkin-pkg",
    "setuptools": "python3-setuptools",
}


def imported_modules() -> dict[str, set[str]]:
    """Top-level module → files importing it, over the package, launch files and build scripts."""
    found: dict[str, set[str]] = {}
    for root in SOURCES:
        for path in root.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top != "microexp_ros":
                        found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def test_package_xml_is_valid_format_3():
    package = parse_package(str(REPO / "package.xml"))
    package.validate()
    assert package.package_format == 3
    assert package.name == "microexp_ros"
    assert package.get_build_type() == "ament_cmake"
    assert "rosidl_interface_packages" in [g.name for g in package.member_of_groups]


def test_version_agrees_with_setup_cfg_and_python_package():
    import microexp_ros

    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    version = parse_package(str(REPO / "package.xml")).version
    assert config["metadata"]["version"] == version == microexp_ros.__version__


def test_every_imported_module_is_a_declared_dependency():
    package = parse_package(str(REPO / "package.xml"))
    declared = {d.name for d in package.build_depends + package.exec_depends + package.build_export_depends
                + package.buildtool_depends + package.test_depends}
    missing = {}
    for module, files in imported_modules().items():
        key = PROVIDERS.get(module)
        if key is None or key not in declared:
            missing[module] = (key or "no known provider: add it to PROVIDERS and package.xml", sorted(files))
    assert not missing, f"imports without a package.xml dependency: {missing}"


def test_required_dependencies_are_named():
    package = parse_package(str(REPO / "package.xml"))
    declared = {d.name for d in package.build_depends + package.exec_depends + package.buildtool_depends}
    tests = {d.name for d in package.test_depends}
    for name in ("rclpy", "std_msgs", "sensor_msgs", "builtin_interfaces", "diagnostic_msgs", "event_camera_msgs",
                 "cv_bridge", "launch", "launch_ros", "rosidl_default_generators", "rosidl_default_runtime",
                 "python3-numpy", "python3-opencv", "python3-torch-pip", "python3-snntorch-pip"):
        assert name in declared, name
    assert {"launch_testing", "python3-pytest"} <= tests
