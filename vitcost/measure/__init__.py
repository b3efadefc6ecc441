"""Measurement of torch modules: counting, timing, memory and the roofline."""
