from .dilated_resnet import DilatedBasicBlock, build_dilated_resnet_backbone
from .hrnet import HighResolutionModule, HRNet, build_hrnet_backbone
from .mobilenetv2 import DilatedMobileNetV2, build_mobilenetv2_backbone
