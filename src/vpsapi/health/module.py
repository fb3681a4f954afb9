from vpsapi.core.modules import Module
from vpsapi.health.router import router

MODULE = Module(name="health", description="Health probes and metrics", routers=[router])
