"""Fine-tuning checkpoints (LoRA or full) with recorded lineage, and estimating their memory first."""
