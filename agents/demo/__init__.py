"""`samband demo`: a synthetic Norway's life events through the bus to eight sample municipal systems."""
