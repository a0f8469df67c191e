"""Python packaging of microexp_ros; metadata and console scripts live in setup.cfg (shared with CMake)."""

from setuptools import setup

setup()
