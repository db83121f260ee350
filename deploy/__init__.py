"""Running the federation: the `ctta` CLI, provisioning, keys and the embedded demo."""
