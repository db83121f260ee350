"""The shared contract of the CTTA backbone.

Everything a node, the hub or an integrator must agree on lives here: record models,
the taxonomy, subjects, the event envelope and its signature. It imports neither FastAPI
nor SQLModel, so integrators can depend on it alone.
"""
