"""Running Kafka and the bus: the local broker launcher, compose file and cluster manifests."""
