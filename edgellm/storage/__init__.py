"""Where edgellm keeps things on this machine: EDGELLM_HOME, the model store, disk failures."""
