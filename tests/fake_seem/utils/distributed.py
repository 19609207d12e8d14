def init_distributed(opt):
    return dict(opt, distributed_initialised=True)
