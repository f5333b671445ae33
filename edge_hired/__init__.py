"""edge-hired: HiRED token dropping for high-resolution VLMs on Jetson boards and small GPUs."""

__version__ = "0.1.0"
