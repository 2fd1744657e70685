"""Run by ``torchrun --nproc_per_node=2 tests/ddp_train.py DATA OUT`` in test_distributed_train.py.

Builds the same tiny random Llama on every rank (same seed), trains it with the unchanged
``sys2distill.trainer.train`` and writes each rank's final weight checksum, so the test can
check that DDP kept the replicas identical.
"""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

from sys2distill.config import TrainConfig
from sys2distill.models import embedded_checkpoint
from sys2distill.trainer import train

data, out = Path(sys.argv[1]), Path(sys.argv[2])
tokenizer = AutoTokenizer.from_pretrained(embedded_checkpoint())
torch.manual_seed(0)
model = LlamaForCausalLM(LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                     num_key_value_heads=1, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id))
# The test writes 8 records; 2 per device, 1 epoch: 2 optimizer steps if the 2 ranks split the data, 4 if each saw it all.
train(data, "tiny", out / "model", TrainConfig(learning_rate=1e-2, epochs=1, batch_size=2), loaded=(model, tokenizer))
rank = dist.get_rank() if dist.is_initialized() else 0
checksum = sum(float(p.detach().double().sum()) for p in model.parameters())
backend = dist.get_backend() if dist.is_initialized() else None
(out / f"rank{rank}.json").write_text(json.dumps({"checksum": checksum, "backend": backend}))
