"""What runs inside the FL processes: Flower server/client entry points, models, data, the Redis reporter."""
