"""Data pipeline: TF->numpy bridge, uint8 cache, train/valid split, batch workers, device-resident sets."""
