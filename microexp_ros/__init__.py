"""microexp_ros: facial micro-expression analysis with an event camera beside an RGB camera.

The science (codecs, simulator, models, metrics) lives in plain Python subpackages that import no ROS;
`microexp_ros.ros`, `microexp_ros.nodes` and `microexp_ros.bringup` are the only places that import rclpy.
"""

# rosidl installs the generated `microexp_ros.msg` into the installed copy of this package; a source checkout
# on PYTHONPATH finds it there too (pkgutil-style package path extension).
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

__version__ = "0.1.0"
