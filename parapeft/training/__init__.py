"""Fine-tuning PARA and the HF peft baselines (LoRA, IA3, DoRA) on a task, with Accelerate."""
