"""Simulation: an event camera model (ESIM/v2e style), frame-rate up-sampling by optical flow, video to events."""
