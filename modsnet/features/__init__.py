"""Dataset features per modality: the numbers that place an uploaded dataset beside the library's datasets.

One module per modality; the same functions describe the built-in libraries' datasets and a user's upload,
so the two are comparable by construction.
"""
