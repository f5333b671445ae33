"""The planner's facts, gathered: bundle manifests, checkpoint configs, profiles, the live device.

The planner (`edge_hired.planner`) is pure arithmetic; everything it is given that must be
read from disk or measured on this machine is read here.
"""
