"""`edgellm bench`: measure a model on this device with edgellm's own plan (measure), and keep what was measured by
device and model so the estimates can use it (results)."""
