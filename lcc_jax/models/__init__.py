"""Base models F (and parity models F_P, same architectures); importing registers them."""
from lcc_jax.models import lenet  # noqa: F401
from lcc_jax.models import mlp  # noqa: F401
from lcc_jax.models import resnet  # noqa: F401
from lcc_jax.models import vgg  # noqa: F401
from lcc_jax.models import function  # noqa: F401
