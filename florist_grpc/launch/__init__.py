"""Process supervision: launching FL processes locally or through agents, watching and stopping them."""
