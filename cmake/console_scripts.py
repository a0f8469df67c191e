"""Write one executable wrapper per console script of setup.cfg, with the given interpreter in the shebang.

CMake runs this at build time, so colcon and the venv bootstrap install the same executables from the one list
of entry points in setup.cfg (rosidl already owns ament_python_install_package for this package name).
Usage: console_scripts.py SETUP_CFG OUT_DIR PYTHON
"""

import configparser
import stat
import sys
from pathlib import Path

TEMPLATE = """#!{python}
# Generated from setup.cfg by cmake/console_scripts.py.
import sys
{early}
from {module} import {function}

if __name__ == "__main__":
    sys.exit({function}())
"""
# Node executables remember a SIGINT/SIGTERM that arrives while their imports run (microexp_ros.ros.early_stop).
NODE_MODULES = "microexp_ros.nodes."
EARLY_STOP = """
from microexp_ros.ros.early_stop import remember_stop

remember_stop()
"""


def main(setup_cfg: str, out_dir: str, python: str) -> int:
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    entries = config.get("options.entry_points", "console_scripts", fallback="")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for line in filter(None, (raw.strip() for raw in entries.splitlines())):
        name, target = (part.strip() for part in line.split("=", 1))
        module, function = (part.strip() for part in target.split(":", 1))
        script = out / name
        early = EARLY_STOP if module.startswith(NODE_MODULES) else ""
        script.write_text(TEMPLATE.format(python=python, early=early, module=module, function=function))
        script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
