"""One tokenizer per modality: batch dict -> Tokens, and the inverse for pictures."""
