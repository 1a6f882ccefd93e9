"""Sources and sinks to outside systems: the plugin API integrators extend."""
