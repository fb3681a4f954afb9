"""vpsapi: one service for job processing, VPS management, camera devices and smart buildings."""

__version__ = "0.1.0"
