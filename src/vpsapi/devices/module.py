from vpsapi.core.modules import Module

MODULE = Module(name="devices", description="(not built yet)")
