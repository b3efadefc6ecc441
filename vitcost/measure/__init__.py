"""Measuring torch modules: operation counts (fvcore and FlopCounterMode, on real or meta tensors),
their cross-check against the analytic model, timing, memory and the roofline.

Nothing here is imported by `import vitcost`: torch and fvcore load only when a measurement runs.
"""
