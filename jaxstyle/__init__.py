"""jaxstyle: neural style transfer (Gatys et al.) as one jit-compiled JAX program."""

from jaxstyle.config import PRESETS as PRESETS
from jaxstyle.config import Config as Config
from jaxstyle.config import make_config as make_config
from jaxstyle.errors import UserError as UserError
from jaxstyle.image import load_image as load_image
from jaxstyle.image import save_image as save_image
from jaxstyle.stylize import Progress as Progress
from jaxstyle import stylize as stylize  # the module, callable as the API function
from jaxstyle.batch import run_batch as run_batch
from jaxstyle.batch import stylize_batch as stylize_batch
from jaxstyle.vgg import VGG as VGG
from jaxstyle.vgg import build_vgg as build_vgg
from jaxstyle.weights import load_vgg as load_vgg

__version__ = "0.1.0"
