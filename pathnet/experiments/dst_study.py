"""The dynamic sparse training experiment (``pathnet experiment dst``): filled in below."""
