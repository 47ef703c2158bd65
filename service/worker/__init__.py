"""The scoring worker: batch windows from the bus, run models, publish calibrated scores in order."""
