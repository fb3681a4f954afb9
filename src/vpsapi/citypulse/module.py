from vpsapi.core.modules import Module

MODULE = Module(name="citypulse", description="(not built yet)")
