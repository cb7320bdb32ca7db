"""Encoders and decoders; importing registers them."""
from lcc_jax.coders import berrut  # noqa: F401
from lcc_jax.coders import concat  # noqa: F401
from lcc_jax.coders import conv  # noqa: F401
from lcc_jax.coders import letcc  # noqa: F401
from lcc_jax.coders import mds  # noqa: F401
from lcc_jax.coders import mlp  # noqa: F401
from lcc_jax.coders import summation  # noqa: F401
