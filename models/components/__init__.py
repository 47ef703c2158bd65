"""Building blocks shared by several methods: U-Net blocks, the pixel discriminator, frame losses and PSNR."""
