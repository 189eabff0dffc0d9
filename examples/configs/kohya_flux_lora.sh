#!/bin/sh
# A kohya sd-scripts Flux LoRA run, as you would launch it (noiselevels reads this file as it is:
#   noiselevels inspect examples/configs/kohya_flux_lora.sh)
accelerate launch --mixed_precision bf16 --num_cpu_threads_per_process 1 flux_train_network.py \
  --pretrained_model_name_or_path models/flux1-dev.safetensors --clip_l models/clip_l.safetensors \
  --t5xxl models/t5xxl_fp16.safetensors --ae models/ae.safetensors \
  --network_module networks.lora_flux --network_dim 16 --network_alpha 16 \
  --optimizer_type adamw8bit --learning_rate 1e-4 --max_train_epochs 10 --mixed_precision bf16 \
  --timestep_sampling flux_shift --sigmoid_scale 1.0 --model_prediction_type raw --guidance_scale 1.0 \
  --noise_offset 0.05 \
  --output_dir output --output_name my-flux-lora --save_model_as safetensors
