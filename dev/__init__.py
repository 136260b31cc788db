"""Developer helpers that are no part of nlnet: preparing an offline GPU machine (``gpu_wheels.sh``)."""
