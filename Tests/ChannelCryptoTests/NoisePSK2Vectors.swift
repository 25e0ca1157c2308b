// Known-answer vectors for the PSK handshakes: KKpsk2 (the channel's
// pattern) and IKpsk2, over 25519 with ChaChaPoly/AESGCM and
// BLAKE2b/SHA256/SHA512 (12 vectors). The bundled cacophony-25519.json has
// no PSK vectors.
//
// Origin: haskell-cryptography/cacophony, `vectors/cacophony.txt` at commit
// 36c1e5c3a799342b226547ce9fdb3579ab60ccd3 (public domain), the same source as
// cacophony-25519.json. Values copied unchanged in that file's own spelling
// (`name`, `init_psk`); these vectors carry no handshake_hash, so every
// handshake and transport ciphertext is what is checked.
let noisePSK2VectorsJSON = #"""
{
 "vectors": [
  {
   "name": "Noise_KKpsk2_25519_AESGCM_BLAKE2b",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79449c18874d79e5beb20953e4aa8f80d21e0835a2e0e3cd00f3d04c6f64346ed3d8"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088431311c09d4198c219ba7d92ab032f840f6f8453ddbcfaff6599c089deaf6c9c"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "2dac5a42c78d260333a497112161dceffef13cf46edb9db3623764"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "b973a28d06e454255e52d498763f604135e3de837ef21b6c0f225d"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "9e15b5d633c4ddd4cf9dfe5194972979fe6a12369ddde7593b7b3f5b02b975e63f"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "6738e6cc26dba489cde0d24b1f0fa009289371bf4abd5401e5797a177ac0bbaa6cf9ad2a8c"
    }
   ]
  },
  {
   "name": "Noise_KKpsk2_25519_AESGCM_SHA256",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c794483cf298f1bfed916ea20d8f528bd30670670c7245e236a68f021b5a521d8bf31"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884332b32e0f483ae58a9c36e93390a9c2238918bda6ae0ebfe48a400b8f565f5f"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "f7cf1f47885fa5ff7cefecf3db3066f89b996834069b8f1517c55a"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "ce7de28a6b54b559d3db2f7482f1be3264a62165f12a73e377ebde"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "da4173c5aa84756d0eab64adfbe81f10538b099966897771a071502ee2899e2fbd"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "1a1e3408acea689f5cced09b246e13e68e1ce146e8f1b3478482593b988587be99ba7595d2"
    }
   ]
  },
  {
   "name": "Noise_KKpsk2_25519_AESGCM_SHA512",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944e3ddc11c2bd0acecc9029855285239fd3df138b5941859df91decb95aea39df7"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088432010735f1af8d37fe6c040e7442063b55930200e3ee7496b7558ad3302e286"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "34b12b66dff083a2e426aac4fe642bbb247f072b3801c3079657a5"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "dd3b4ec0dde7415f560021a43b67ca959a42379b9df94d05b4bd9c"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "b2d6697e0d8027effbc4bd1536c0aecccbca6719417dd7c94c87410bcbecd5edf5"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "ff5a6a72a825a063dc59a2b6b03a32cd87363ba73377a9932cc0d71d0886d884eee15d46f2"
    }
   ]
  },
  {
   "name": "Noise_KKpsk2_25519_ChaChaPoly_BLAKE2b",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79448efbe6f1e81b32745bac25065b49764fe25a051f2eb2fa45e734098c9323832c"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843544bb469ea4910ba32808608a5b369e9afc99b4c93192bf005a08596299cee"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "d5962c22152dff4a40e026378d827b8c332d5b36b77c66589b30e6"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "43d35b7f95112418e4acf90169a4925e3e789298638157cc2fb65a"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "89f05cc5beab155ac9c55ceabb5b80b0a04cf8dfbd89e5b22630db97c7fb533a26"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "8fd6bc476d670388d589fda897dc7768214a0a3e5f5442fb429b4abed25101f65e4e3258ca"
    }
   ]
  },
  {
   "name": "Noise_KKpsk2_25519_ChaChaPoly_SHA256",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944babf6443250c604872e33233c3b9a29df5c6d334ae2d53f1bd7f0b265a716b37"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884366a1f5f0d79fe93ae476bd1897a7a8ae92764898aa5d49e07b5849f35865ba"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "2eb2686b8814a7c0178fe18bfeeafe3e07312d69486d45e6572546"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "eea5791a890cd573a5c2e2345a8f98b0d1f0727acd24584fcddde5"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "ab2e1a411abaaa3df9cb497dffe4cfb70af6c71f0815b3c33b35e22329dee72f3e"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "ed22a0392c6afbfd6a6adea92b1faf13c4df24072f7060a20b1500609621c6957ac86d82f9"
    }
   ]
  },
  {
   "name": "Noise_KKpsk2_25519_ChaChaPoly_SHA512",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "resp_remote_static": "6bc3822a2aa7f4e6981d6538692b3cdf3e6df9eea6ed269eb41d93c22757b75a",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944c126f263daacafaf9dc9bb20b94eae091891020af0fd87518ef76ab8c54e7f35"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088431dba0387355d9006842994200556d6cbbcea0d27dab803f21fa53a9ea96f2c"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "8632120651a5b71ce184876c2198f3f19b32e701c01317e20277f6"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "b697fce1332cf8e68014f3aa815100fd0fd71c3f80829aef390fe0"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "1a10d56ce4f49abaad65fc0ece8006cf62fb0d9a90be252900226bcbceac8ccb37"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "d8d3be726576dfaa23f33197afbb475e3ff5e57457bda6e79d6e9111096477724209c266f2"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_AESGCM_BLAKE2b",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944a71a182e709ca1196210aba4737eefc297f246be69c3bcf091d0aeaca312ffed962c0dc3580548a1866e8da8c1a6079bd930fec481739834f836786f5053aef16dafde427e36436dc0507ec38a3e8e2d"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843ed5d0d03055f40ced45e18f4e7826a0127de35b6a7739c3ab4eb76a5937570"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "8a2ee7e3ef545e07320b61c62807fb2da40986005134b4f91bdbd4"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "ff62af78349c1789cec1832e2726f09b883fa7fce1944664b36367"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "a686dcfb3783c6264e22cad3a11a583d0cc7c2de5c255e40fa7f29afe260be5a42"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "62a7326dfebbee904d8057a53a7fdee4f450b60d58a304ac1c3b7977c62b5f02657ce7426e"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_AESGCM_SHA256",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79445a1baf339186d7867062b0dd31f5de322d370165d217939b2b7ed9e2bae7840458ea65c2ce1554e0e8077fe7334c4bd514c658fd04d97b86d216f58f59714a7e24144155045c8f36bed85a2cb0fd9af7"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088432fe8d675e949799d2a968211a66cc7ba2b0f4cad8eda3c2bd37eae737bbf88"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "38cbf3835c78b7802df0dd0d9640ff8575debd0cb61cfb52590da1"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "ffc365ff6955fc66c5d809b31ac995f812c5770bd29f0df12f0ffd"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "a7f2828174c4ead2491ffeb77c41c890fd1229ee36f23ccb9066a795daff1cad6b"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "3b86963d5c0e6e3b4153d77153836606393eefc4e5e6dae97796552d1265839ee3825cb80c"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_AESGCM_SHA512",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944d918765416129e70ea0423c824c6467c3b35a3d22033a7be51688ca635d822461f48309288f54c76f59265e9429c362f8ab43380e3733be4111d3578991fb7bc1f5db9172f5c917b766da1faebeede20"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f14480884312fdd981309931b95b46c78aa5da0b7f8b35099e6908f0c011914b0ad71721"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "d4bfbe783b73900518e99bb25313c8f074294d99e4d1ac796b1553"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "9b37f8ebeb2a7e3691ac3b1648cac66cd87609a5f665c98c0efdac"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "74be38bfcfcc8580bf93cdcc4462af3592f1b6e31e27647b2a96adceec8e59dbbe"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "0fe67470447701a01ce337bd7c49f78cd352e4705d9a3f7860fdbca5a1a550bdae8f1da7f7"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2b",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944b6fe0240b839afac809de1630eaf99d8f9b941394f0512c0554633bbb021d15176135c0a20e7fdb9a9ed066f22f054b47625b1d5061cb27d6a17f053273db7c25216a5addc506ee321bc0618feb5849d"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088438f627e69fc120006f746b9d420bf4056cf8481ab32d9e904ffaeeaa56a5290"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "07fc0034398a5f1010322be193d62f94bebf2948a20b3e15d681fe"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "2ea5400f5b8a16971c8b67bde75aeb7987d454b1c0beeb2566932d"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "96eef918ef51639fc0e156da1823c4f71b33fac5af983f5da9384f7da20d86ed91"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "f02766a56496e1fbf32e05274baebf6d693c8f3e4c6e0dc7ebdc5ac170f15dae433b92f469"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_ChaChaPoly_SHA256",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c79442ec9b09893d0f510791784c10cbc959f25b1766e0def6e301d14fbca1c7790ac829b8b3674f5f649a5f0e98479662cbfbf2b2c47cd4b09fcd266cd29d7cb675f1808849707847840f6d178ec4d3733aa"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f1448088439a1b3cebf680b2c74217fcb5eba4ff58a9468cd90c4aca6194f57479b379a7"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "a8fde7a0accec190cd306c5950d4fd8e04a205ec288aa747d8b347"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "59caddd9984a3bbe24c4fb31a2bd455b7eba3fa0980674b1a3a5f9"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "3b9bfebd210c22ba0cff9de79b4007d7a552fffbf92616881faa8a883e25b80258"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "f37512df1043d564d7c46ac85c53d3b6a9a05724bc297e7142808f217561651217fe85b782"
    }
   ]
  },
  {
   "name": "Noise_IKpsk2_25519_ChaChaPoly_SHA512",
   "init_prologue": "4a6f686e2047616c74",
   "init_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "init_static": "e61ef9919cde45dd5f82166404bd08e38bceb5dfdfded0a34c8df7ed542214d1",
   "init_ephemeral": "893e28b9dc6ca8d611ab664754b8ceb7bac5117349a4439a6b0569da977c464a",
   "init_remote_static": "31e0303fd6418d2f8c0e78b91f22e8caed0fbe48656dcf4767e4834f701b8f62",
   "resp_prologue": "4a6f686e2047616c74",
   "resp_psk": "54686973206973206d7920417573747269616e20706572737065637469766521",
   "resp_static": "4a3acbfdb163dec651dfa3194dece676d437029c62a408b4c5ea9114246e4893",
   "resp_ephemeral": "bbdb4cdbd309f1a1f2e1456967fe288cadd6f712d65dc7b7793d5e63da6b375b",
   "messages": [
    {
     "payload": "4c756477696720766f6e204d69736573",
     "ciphertext": "ca35def5ae56cec33dc2036731ab14896bc4c75dbb07a61f879f8e3afa4c7944c813a094f27691670ba5263e52d56bcdf134447ee46a1b1c563edf3b4868526c34a26a128d48f56f7a3e7aa98d62d47957fb0dc98077636c99d84aa830669dcb9dc317d33276e7a6f5666059597c5ae0"
    },
    {
     "payload": "4d757272617920526f746862617264",
     "ciphertext": "95ebc60d2b1fa672c1f46a8aa265ef51bfe38e7ccb39ec5be34069f144808843d014abee2ade1f5164437c7a6ae6e4e4ccb17bc054c59b7b102a9f81e89e31"
    },
    {
     "payload": "462e20412e20486179656b",
     "ciphertext": "25998c594acda3f934904b57016e1be2ecf3cbb302bcf1a64fe99c"
    },
    {
     "payload": "4361726c204d656e676572",
     "ciphertext": "d1acdb7e3146fba25ba73449542c612d3bc1b09a18a162080e2edb"
    },
    {
     "payload": "4a65616e2d426170746973746520536179",
     "ciphertext": "fb342a4b841a8adfb007a0d03e82c7d243d5d1db6f038636176606cc527638bdaa"
    },
    {
     "payload": "457567656e2042f6686d20766f6e2042617765726b",
     "ciphertext": "3c387c65c5982f28bbd78d9fa8f80cd343b6d483373b2e5406be2c18c38ddbc8f86f5f30ea"
    }
   ]
  }
 ]
}
"""#
