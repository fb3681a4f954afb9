from vpsapi.core.modules import Module

MODULE = Module(name="jobs", description="(not built yet)")
