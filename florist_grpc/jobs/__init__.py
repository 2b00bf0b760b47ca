"""The Job domain: model, validation, state machine and catalog."""
