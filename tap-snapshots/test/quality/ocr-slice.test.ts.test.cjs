/* IMPORTANT
 * This snapshot file is auto-generated, but designed for humans.
 * It should be checked into source control and tracked carefully.
 * Re-generate by setting TAP_SNAPSHOT=1 and running tests.
 * Make sure to inspect the output below.  Do not ignore changes!
 */
'use strict'
exports[`test/quality/ocr-slice.test.ts > TAP > ocr reads the slice's pages > the lines read, page by page 1`] = `
Object {
  "pages/003.jpg": Array [
    "More Than The Cost Of",
    "License. However,in accepting such obligations, You may act only on Your own behalf and on Your",
    "sole responsibility, not on behalf of any other Contributor,and only if You agree to indemnify",
    "defend, and hold each Contributor harmless for any liability incurred by, or claims asserted against,",
    "such Contributor by reason of your accepting any such warranty or additional liability.",
    "END OF TERMs AND CONDITIONS APPENDIx: How to apply the Apache License to your work. To apply the Apache",
    "License to your work, attach the following boilerplate notice , with the fields enclosed by brackets replaced with your",
    "own identifying",
    "information. (Don't include the brackets!) The text should be enclosed in the appropriate comment syntax for the fle",
    "format. We also recommend that a file or class name and description of purpose be included on the same printed",
    "page\\" as the copyright notice for easier identification within third-party archives. Copyright [yyyy] [mame",
    "of copyright owner] Licensed under the Apache License, Version 2.o (the License): you may not use",
    "this file except in compliance with the License. You may obtain a copy ofthe",
  ],
  "pages/009.png": Array [
    "As Indicated By",
    "to those patent claims licensable by such Contributor that are necessarily infringed by their Contribution(s) alone or by combination of their Contribution(s) with the Work to which such",
    "Contribution(s) was submitted. If You institute patent litigation against any entity (including a cross-claim or counterclaim in a lawsuit) alleging that the Work or a",
    "Contribution incorporated within the Work constitutes direct or contributory patent infringement, then any patent licenses granted to You under this License for that Work shall terminate as of",
    "the date such litigation is fled. 4. Redistribution. You may reproduce and distribute copies of the Work or",
    "Derivative Works thereof in any medium, with or without modifications, and in Source or Object form, provided that You meet the following conditions: (a) You must give any other recipients of",
    "the Work or Derivative Works a copy of",
    "this License; and (b) You must cause any modified files to carry prominent notices stating that You changed the fles; and (c) You must retain, in the Source form of any Derivative Works that",
    "You distribute, all copyright, patent,",
    "trademark, and attribution notices from the Source form of the Work, excluding those notices that do not pertain to any part of the Derivative Works; and (d) If the Work includes a \\"NOTICE\\"",
    "text file as part of its distribution, then any Derivative Works that You distribute must include a readable copy of the attribution notices contained within such NoTiCE file, excluding those",
    "notices that do not pertain to any part of the Derivative Works, in at least one of the following places: within a NoTiCE text file distributed",
  ],
  "pages/022.png": Array [
    "Version Will Be Given A Distinguishing",
    "may charge any fee you choose for support of this",
    "Package. You may not charge a fee for this Package itself.",
    "However, you may distribute this Package in aggregate",
    "with other (possibly commercial) programs as part of a",
    "larger (possibly commercial) software distribution",
    "provided that",
    "you do not advertise this Package as a product of your",
    "own. You may embed this Package's interpreter within an",
    "executable of yours (by linking); this shall be construed as",
    "a mere form of aggregation, provided that the complete",
    "Standard Version of the interpreter is so embedded. 6.",
    "The scripts and library files supplied as input",
  ],
}
`

exports[`test/quality/ocr-slice.test.ts > TAP > ocr-fp32 reads the slice's pages > the lines read, page by page 1`] = `
Object {
  "pages/003.jpg": Array [
    "More Than The Cost Of",
    "License. However, in accepting such obligations, You may act only on Your own behalf and on Your",
    "sole responsibility, not on behalf of any other Contributor, and only if You agree to indemnify,",
    "defend, and hold each Contributor harmless for any liability incurred by, or claims asserted against,",
    "such Contributor by reason of your accepting any such warranty or additional liability.",
    "END OF TERMS AND cONDITIONS APPENDIx: How to apply the Apache License to your work. To apply the Apache",
    "License to your work, attach the following boilerplate notice, with the fields enclosed by brackets replaced with your",
    "own identifying",
    "information. (Don't include the brackets!) The text should be enclosed in the appropriate comment syntax for the file",
    "format. We also recommend that a file or class name and description of purpose be included on the same printed",
    "page\\" as the copyright notice for easier identification within third-party archives. Copyright [yyyy] [name",
    "of copyright owner] Licensed under the Apache License, Version 2.o (the \\"License\\"); you may not use",
    "this file except in compliance with the License. You may obtain a copy of the",
  ],
  "pages/009.png": Array [
    "As Indicated By",
    "to those patent claims licensable by such Contributor that are necessarily infringed by their Contribution(s) alone or by combination of their Contribution(s) with the Work to which such",
    "Contribution(s) was submitted. If You institute patent litigation against any entity (including a cross-claim or counterclaim in a lawsuit) alleging that the Work or a",
    "Contribution incorporated within the Work constitutes direct or contributory patent infringement, then any patent licenses granted to You under this License for that Work shall terminate as of",
    "the date such litigation is filed. 4. Redistribution. You may reproduce and distribute copies of the Work or",
    "Derivative Works thereof in any medium, with or without modifications, and in Source or Object form, provided that You meet the following conditions: (a) You must give any other recipients of",
    "the Work or Derivative Works a copy of",
    "this License; and (b) You must cause any modified files to carry prominent notices stating that You changed the files; and (c) You must retain, in the Source form of any Derivative Works that",
    "You distribute, all copyright, patent,",
    "trademark, and attribution notices from the Source form of the Work, excluding those notices that do not pertain to any part of the Derivative Works; and (d) If the Work includes a \\"NoTICE\\"",
    "text fle as part of its distribution, then any Derivative Works that You distribute must include a readable copy of the attribution notices contained within such NoTIcE file, excluding those",
    "notices that do not pertain to any part of the Derivative Works, in at least one of the following places: within a NoTICE text file distributed",
  ],
  "pages/022.png": Array [
    "Version Will Be Given A Distinguishing",
    "may charge any fee you choose for support of this",
    "Package. You may not charge a fee for this Package itself.",
    "However, you may distribute this Package in aggregate",
    "with other (possibly commercial) programs as part of a",
    "larger (possibly commercial) software distribution",
    "provided that",
    "you do not advertise this Package as a product of your",
    "own. You may embed this Package's interpreter within an",
    "executable of yours (by linking); this shall be construed as",
    "a mere form of aggregation, provided that the complete",
    "Standard Version of the interpreter is so embedded. 6.",
    "The scripts and library files supplied as input",
  ],
}
`

exports[`test/quality/ocr-slice.test.ts > TAP > text-recognition reads the slice's lines > the text of each line 1`] = `
Array [
  "individual or Legal Entity exercising permissions granted by this",
  "and variables of",
  "of the Work and any modifications or additions to",
  "Order #4691 shipped September 8, 2006",
  "Version of the Package. b) use the modifed Package",
  "Invoice No. 4913 dated 15/08/2027",
  "not on behalf of any Contributor. You",
  "of such an image shall neither",
  "Derivative Works thereof, You may choose to offer, and",
  "Public Domain or otherwise make them Freely Available, such",
  "including, without limitation, any warranties",
  "the Package with your modifications. c) give",
]
`

exports[`test/quality/ocr-slice.test.ts > TAP > text-recognition-fp32 reads the slice's lines > the text of each line 1`] = `
Array [
  "individual or Legal Entity exercising permissions granted by this",
  "and variables of",
  "of the Work and any modifications or additions to",
  "Order #4691 shipped September 8, 2006",
  "Version of the Package. b) use the modified Package",
  "Invoice No. 4913 dated 15/08/2027",
  "not on behalf of any Contributor. You",
  "of such an image shall neither",
  "Derivative Works thereof, You may choose to offer, and",
  "Public Domain or otherwise make them Freely Available, such",
  "including, without limitation, any warranties",
  "the Package with your modifications. c) give",
]
`
