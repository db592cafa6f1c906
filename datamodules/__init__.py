"""One LightningDataModule per modality, plus `common` for what they share (indexing, split, on_error, seeding)."""
