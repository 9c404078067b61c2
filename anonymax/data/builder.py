"""The base of every anonymax TFDS builder: array_record files, so reading needs no TensorFlow."""

from __future__ import annotations

import tensorflow_datasets as tfds


class ArrayRecordBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A `GeneratorBasedBuilder` that writes array_record files unless told otherwise.

  `tfds.data_source` reads array_record files by random access without TensorFlow; TFDS's
  default format (TFRecord) would need it. Version 1.0.0 unless a subclass says more.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}

  def __init__(self, **kwargs):
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
