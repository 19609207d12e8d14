from torch import nn


class BaseModel(nn.Module):
    def __init__(self, opt, module):
        super().__init__()
        self.opt = opt
        self.model = module

    def from_pretrained(self, load_dir):
        with open(load_dir, 'rb'):  # a missing checkpoint fails as in SEEM
            pass
        return self
