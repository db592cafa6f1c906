"""Fine-tuning and linear probing of a pretrained encoder (`python train.py stage=finetune|linprobe pretrained=PATH`)."""
