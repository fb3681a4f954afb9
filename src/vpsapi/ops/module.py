from vpsapi.core.modules import Module

MODULE = Module(name="ops", description="(not built yet)")
