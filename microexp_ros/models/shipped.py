"""File names of the shipped AU weights (share/microexp_ros/models), in a module without torch so that the
graphs can name them when they are described (launch files, `microexp launch`)."""

DEFAULT_EVENTS_MODEL = "snn_events_default.safetensors"          # high-resolution event sensors (EVK4-like)
DEFAULT_LOW_EVENTS_MODEL = "snn_events_low_default.safetensors"  # low-resolution ones (DAVIS346-like)
DEFAULT_RGB_MODEL = "cnn_rgb_default.safetensors"                # the webcam model au_classifier fuses with
