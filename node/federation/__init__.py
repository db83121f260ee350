"""This node's face to the federation: manifest, status, heartbeat and resync answers."""
