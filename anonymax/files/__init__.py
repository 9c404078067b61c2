"""Anonymizing a user's own files (`launch/anonymize.py`): photos, videos and .npy clips.

* `plan`: which files to read, and where each output goes (never onto an input, never two
  outputs on one path);
* `images`: reading users' photos as they look (EXIF orientation, 16-bit, alpha, a pixel cap
  checked before decoding) and writing them back as PNG without metadata;
* `runner`: anonymizing each file with an `anonymax.methods.Method`, videos and clips streamed
  a chunk at a time, every failure named, skipped and counted, nothing half-written.
"""
