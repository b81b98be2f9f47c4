from .hmsa_segmentor import HMSASemanticSegmentor
from .segfix_model import SegFixModel
from .semantic_segmentor import OCRSemanticSegmentor
