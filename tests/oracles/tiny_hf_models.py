"""Tiny, randomly initialised LLaVA and Video-LLaVA models with processors, built offline.

Everything is made from configs: a word-level tokenizer over a small vocabulary (with the
``<image>``/``<video>`` placeholders as special tokens), a CLIP image processor at 32×32, a chat
template in the LLaVA-1.5 format, and the models themselves. `save_tiny_llava` and
`save_tiny_video_llava` write them to a directory that `from_pretrained` loads like any checkpoint
from the hub.

The Video-LLaVA processor needs torchvision for its video processor. Without torchvision only the
tokenizer (with its chat template) and the image processor are saved, which is what a local
checkpoint directory holds when the processor cannot be built; the oracle then processes clips
frame by frame.
"""

from __future__ import annotations

import importlib.util

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import (
  CLIPImageProcessor,
  CLIPVisionConfig,
  LlamaConfig,
  LlavaConfig,
  LlavaForConditionalGeneration,
  LlavaProcessor,
  PreTrainedTokenizerFast,
  VideoLlavaConfig,
  VideoLlavaForConditionalGeneration,
  VideoLlavaImageProcessor,
)

SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>", "<image>", "<video>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID, IMAGE_ID, VIDEO_ID = range(6)
# No number words: the VQA answer normalisation would rewrite them.
WORDS = (
  "USER ASSISTANT : what is the person doing color of shirt red blue green yellow cat dog "
  "run jump sit wave walk clap yes no ? . , hand left right up down"
).split()
VOCAB = {t: i for i, t in enumerate(SPECIAL_TOKENS + tuple(WORDS))}

IMAGE_SIZE = 32
PATCH_SIZE = 8

# The LLaVA-1.5 conversation format: "SYSTEM USER: <image>\n{prompt} ASSISTANT:".
CHAT_TEMPLATE = (
  "{% for message in messages %}"
  "{% if message['role'] == 'system' %}{{ message['content'][0]['text'] }} "
  "{% else %}{{ message['role'].upper() }}: "
  "{% for item in message['content'] %}"
  "{% if item['type'] == 'image' %}<image>\n"
  "{% elif item['type'] == 'video' %}<video>\n"
  "{% else %}{{ item['text'] }}{% endif %}"
  "{% endfor %} {% endif %}"
  "{% endfor %}"
  "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def make_tokenizer() -> PreTrainedTokenizerFast:
  """A word-level tokenizer over `VOCAB` that prepends BOS, like LLaMA's."""
  tok = Tokenizer(models.WordLevel(vocab=dict(VOCAB), unk_token="<unk>"))
  tok.add_special_tokens(list(SPECIAL_TOKENS))
  tok.pre_tokenizer = pre_tokenizers.Whitespace()
  tok.post_processor = processors.TemplateProcessing(
    single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", BOS_ID)]
  )
  tokenizer = PreTrainedTokenizerFast(
    tokenizer_object=tok,
    bos_token="<s>",
    eos_token="</s>",
    unk_token="<unk>",
    pad_token="<pad>",
  )
  tokenizer.chat_template = CHAT_TEMPLATE
  return tokenizer


def _configs() -> tuple[CLIPVisionConfig, LlamaConfig]:
  vision = CLIPVisionConfig(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=IMAGE_SIZE,
    patch_size=PATCH_SIZE,
    projection_dim=32,
  )
  text = LlamaConfig(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=len(VOCAB),
    max_position_embeddings=512,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    pad_token_id=PAD_ID,
    # Large random weights give peaked, input-dependent logits, so wrong token alignments show.
    initializer_range=0.5,
  )
  return vision, text


def _image_processor_kwargs() -> dict:
  return dict(
    size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
  )


def save_tiny_llava(path: str, *, seed: int = 0) -> LlavaForConditionalGeneration:
  """Writes a tiny `LlavaForConditionalGeneration` and its `LlavaProcessor` to `path`.

  Returns:
    The model as saved (to compare with what `from_pretrained` loads).
  """
  torch.manual_seed(seed)
  vision, text = _configs()
  config = LlavaConfig(
    vision_config=vision,
    text_config=text,
    image_token_index=IMAGE_ID,
    image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
  )
  model = LlavaForConditionalGeneration(config).eval()
  processor = LlavaProcessor(
    image_processor=CLIPImageProcessor(**_image_processor_kwargs()),
    tokenizer=make_tokenizer(),
    patch_size=PATCH_SIZE,
    vision_feature_select_strategy="default",
    num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
    chat_template=CHAT_TEMPLATE,
  )
  model.save_pretrained(path)
  processor.save_pretrained(path)
  return model


def save_tiny_video_llava(path: str, *, seed: int = 0) -> VideoLlavaForConditionalGeneration:
  """Writes a tiny `VideoLlavaForConditionalGeneration` and its processor parts to `path`.

  Returns:
    The model as saved.
  """
  torch.manual_seed(seed)
  vision, text = _configs()
  config = VideoLlavaConfig(
    vision_config=vision,
    text_config=text,
    image_token_index=IMAGE_ID,
    video_token_index=VIDEO_ID,
    image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2,
    video_seq_length=((IMAGE_SIZE // PATCH_SIZE) ** 2 + 1) * 8,
  )
  model = VideoLlavaForConditionalGeneration(config).eval()
  model.save_pretrained(path)
  tokenizer = make_tokenizer()
  image_processor = VideoLlavaImageProcessor(**_image_processor_kwargs())
  if importlib.util.find_spec("torchvision") is not None:
    from transformers import VideoLlavaProcessor, VideoLlavaVideoProcessor

    VideoLlavaProcessor(
      image_processor=image_processor,
      video_processor=VideoLlavaVideoProcessor(**_image_processor_kwargs()),
      tokenizer=tokenizer,
      patch_size=PATCH_SIZE,
      vision_feature_select_strategy="default",
      num_additional_image_tokens=1,
      chat_template=CHAT_TEMPLATE,
    ).save_pretrained(path)
  else:
    tokenizer.save_pretrained(path)
    image_processor.save_pretrained(path)
  return model
