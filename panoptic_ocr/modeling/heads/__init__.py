from .context_head import AuxiliaryBranch, ContextHead
from .ocr_head import OCRContext, OCRHead
