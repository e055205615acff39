"""sim: the five-sensor driving simulator (scenes, sensors, weather, faults) and its writers."""
