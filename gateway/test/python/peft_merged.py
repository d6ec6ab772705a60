"""Greedy chat completion by HF peft's merged model, the reference for a LoRA adapter served by the engine.

    python peft_merged.py MODEL_DIR ADAPTER_DIR MAX_TOKENS PROMPT

Prints {"text", "tokens"}: the adapter merged into the backbone (peft's merge_and_unload), the prompt
rendered with the model's chat template, greedy decoding until the end of sequence or MAX_TOKENS.
"""

import json
import sys

import torch
from peft import PeftModel

from parapeft.backbones import load_base_model


def main() -> None:
    model_dir, adapter_dir, max_tokens, prompt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model, tokenizer = load_base_model(model_dir)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload().eval()
    text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.no_grad():
        out = merged.generate(ids, max_new_tokens=max_tokens, do_sample=False)
    tokens = out[0, ids.shape[1]:].tolist()
    print(json.dumps({"text": tokenizer.decode(tokens, skip_special_tokens=True), "tokens": len(tokens)}))


if __name__ == "__main__":
    main()
