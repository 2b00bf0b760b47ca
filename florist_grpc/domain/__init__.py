"""The ground floor: the job model, states, catalog, validation, errors and merge patches.

Imports nothing else of florist_grpc; every other package may import it.
"""
