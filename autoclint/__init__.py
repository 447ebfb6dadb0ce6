"""autoclint: an AutoDL/AutoCV submission that trains an image/video classifier under a time budget."""

__version__ = "0.1.0"
