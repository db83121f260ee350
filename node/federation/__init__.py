"""This node's face to the federation: manifest, status and heartbeat."""
